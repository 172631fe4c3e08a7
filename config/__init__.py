"""The desk's configuration: settings from the environment, hours, prompts."""
