"""``headrace schema-registry``: Confluent's Schema Registry REST API over ZooKeeper
(``api.py`` the answers, ``store.py`` the data, ``avro_schemas.py`` canonical forms and
compatibility, ``server.py`` the twisted.web server, ``cli.py`` the command)."""
