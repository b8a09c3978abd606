"""runwatch.store"""
