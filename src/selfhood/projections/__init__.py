"""selfhood.projections"""
