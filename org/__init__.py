"""The organisation: regions, sites, users, assignments, and the template catalogue."""
