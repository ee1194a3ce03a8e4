"""Octavia provider driver for LoxiLB.

It runs inside octavia-api and only forwards: every call goes to the loxilb-octavia host
(docs/host-protocol.md), which decides and does the work.

Layout:
  config.py     the [driver_loxilb] options
  transport.py  the two ways to reach the host (Unix socket, oslo.messaging), cached per process
  resolve.py    which load balancer an object belongs to (driver-agent get socket), cached per process
  driver.py     the ProviderDriver: validate, then cast
"""
