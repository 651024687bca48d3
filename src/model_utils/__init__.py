"""Configuration and device / ModelArts adapters."""
