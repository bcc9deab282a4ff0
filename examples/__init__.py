"""Example apps modelled on a real leak: see fleet.py."""
