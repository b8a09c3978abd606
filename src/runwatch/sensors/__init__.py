"""runwatch.sensors"""
