"""selfhood.consistency"""
