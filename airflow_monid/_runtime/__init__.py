"""What every task and trigger of this provider shares: lifecycle, waiting, deferral, delivery."""
