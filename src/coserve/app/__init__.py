"""coserve.app: temporary package marker until the SocketServer core lands (dropped at merge)."""
