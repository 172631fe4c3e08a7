"""Routing: the directory, presence, queues and the decisions of the ACD.

Plain functions over Redis and the database; nothing here imports Flask.
"""
