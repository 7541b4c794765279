"""Users: the account itself, self-service and admin management."""
