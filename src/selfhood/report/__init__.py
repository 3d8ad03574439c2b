"""selfhood.report"""
