"""The detection engine: people and faces in images and video, batched, with pictures of the results."""
