"""runwatch.sensors.proc"""
