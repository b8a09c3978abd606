"""runwatch.enrich"""
