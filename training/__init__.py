"""Training, evaluation and reports for the ILCS model zoo on NEU-style data."""
