"""Asterisk behind dialerd's ports: calls over ARI (``ari``), queues over AMI (``ami_queue``).

Pure parts (event decoding, the call state machine, the AMI line protocol, the count of
available agents) live in their own modules and are tested without an Asterisk; the
I/O shells (``ari.AriTelephony``, ``ami.AmiClient``) only move bytes and apply them.
"""
