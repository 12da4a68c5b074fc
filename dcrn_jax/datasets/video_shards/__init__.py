"""`video_shards`: a video_folder decoded once into JPEG frame records (see builder.py)."""
