"""The broker's security: who a connection's peer is (SASL logins: ``sasl.py``, its
mechanisms ``mechanisms.py``, its settings ``sasl_settings.py``, the SCRAM credentials kept
in ZooKeeper ``credentials.py``) and what it may do."""
