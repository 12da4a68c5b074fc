"""Video files below both the runtime pipeline (data/) and the offline builders (datasets/).

    clips.py          which frames a clip takes (train: random start; eval: evenly spaced
                      clips x crops), numpy only
    video_files.py    probing and decoding video files with PyAV
    video_lists.py    the split lists of UCF101, HMDB51, Kinetics CSVs and plain lists, parsed
    video_layouts.py  a folder of videos (any layout) -> one table of (file, label, split)

Nothing here imports TensorFlow, JAX or the pipeline: data/ (video_folder, tfds_source, files)
and datasets/video_shards/ both read these, and these read neither.
"""
