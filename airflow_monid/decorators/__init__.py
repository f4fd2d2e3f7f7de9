"""TaskFlow decorators of this provider (``@task.monid``)."""
