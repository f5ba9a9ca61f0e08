"""The built-in guards; each module imports only what it needs, when it is built."""
