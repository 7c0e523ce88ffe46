"""Reporting cycles (REP_CYCLE): the calendar, deadlines and open/closed state."""
