"""City policy as configuration: versioned rules files, their loader, USCC checks and
pure policy checks. Never imports the database layer."""
