"""selfhood.eventlog"""
