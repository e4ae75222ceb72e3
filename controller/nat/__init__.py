"""The NAT probe's edge: Docker networks and containers that prove a router preset (cluster/nat.py)."""
