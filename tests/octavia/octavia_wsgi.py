"""The WSGI entry point gunicorn serves: Octavia's own API application, configured by the file named in
OCTAVIA_E2E_CONF. (octavia.wsgi.api would parse gunicorn's command line as Octavia's.)"""
import os

from octavia.api import app

application = app.setup_app(argv=["octavia-api", "--config-file", os.environ["OCTAVIA_E2E_CONF"]])
