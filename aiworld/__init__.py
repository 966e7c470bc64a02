"""rAthena AI World: NPCs that live on their own as durable Temporal workflows."""
