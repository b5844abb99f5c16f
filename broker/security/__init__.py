"""The broker's security: the ACL authorizer (pure), its ZooKeeper-backed cache, and the
per-API checks that ask it."""

from .authorizer import AclBinding, AclFilter, AclSet, Authorizer

__all__ = ["AclBinding", "AclFilter", "AclSet", "Authorizer"]
