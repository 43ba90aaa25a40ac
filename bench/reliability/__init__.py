"""Fault and load scenarios against gunicorn and a private PostgreSQL (make reliability)."""
