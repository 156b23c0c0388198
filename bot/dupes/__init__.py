"""Repeated questions: prepare channel messages, find the earlier one a message repeats, judge, flag."""
