"""
The protocol without I/O: frames, streams, handshakes, keys and the
datagram format, as plain objects that are given bytes and times and
return bytes and decisions.  Nothing here imports Twisted (or zope):
C{tests.test_layering} checks it.  The Twisted side (carriers, sessions,
endpoints) drives these.
"""
