"""Ray actors of the swarm (plain classes, wrapped with ray.remote at creation)."""
