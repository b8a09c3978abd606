"""runwatch.outputs"""
