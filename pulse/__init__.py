"""Input: staff pulse-survey exports. Identity columns are dropped while parsing; only aggregates are kept."""
