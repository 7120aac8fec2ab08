"""Input: vendor KPI feed files become validated observations, or are rejected whole with every reason."""
