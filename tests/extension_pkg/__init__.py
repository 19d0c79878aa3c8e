"""A user's package outside swarm_sona: its extensions are named by import reference
(``"extension_pkg.my_extensions:NAME"``), so every process of a swarm imports them."""
