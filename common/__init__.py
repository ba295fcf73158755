"""Shared infrastructure that no app owns: Redis clients, admin and REST base classes, Lua."""
