"""selfhood.checkers"""
