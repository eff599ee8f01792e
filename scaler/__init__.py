"""The scaler Lambda: sets each step's ECS desired count from its queue backlog."""
