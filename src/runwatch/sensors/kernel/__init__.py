"""runwatch.sensors.kernel"""
