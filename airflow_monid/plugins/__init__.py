"""Airflow plugins of this provider, registered through its provider info (``plugins``)."""
