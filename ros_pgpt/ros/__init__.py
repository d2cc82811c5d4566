"""The ROS 2 side of ros_pgpt: the perception node (perception_node.py, started by run_node.main), its
parameters, outputs and worker, the Query client and bag tools. Nothing here is imported by the model."""
