"""The bundled demo: synthetic practices, vendor feeds and a staff pulse survey."""
