"""selfhood.chaos"""
