"""runwatch.containers"""
