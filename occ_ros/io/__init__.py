"""File formats: atomic writes, Occ3D label files, rosbag2 messages."""
