"""Replay a camera bag into the perception node (node + replay in one launch).

    ros2 launch ros_pgpt replay.launch.py bag:=/path/to/sample_bag
    ros2 launch ros_pgpt replay.launch.py bag:=/path/to/bag rate:=0.5 loop:=true

Make the sample bag first with `ros-pgpt make-bag /path/to/sample_bag` (or
`python3 -m ros_pgpt make-bag ...`). The replay uses the same pure-Python
player as `ros-pgpt replay` (rosbags reader + rclpy raw publishing), so it
also works where rosbag2 is not installed; with rosbag2, `ros2 bag play` works
on the same bag too. Needs `launch`/`launch_ros` (not on PyPI; see
perception.launch.py).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription
from launch.conditions import IfCondition, UnlessCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import FindExecutable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    bag = LaunchConfiguration('bag')
    bag_topic = LaunchConfiguration('bag_topic')
    camera_topic = LaunchConfiguration('camera_topic')
    rate = LaunchConfiguration('rate')
    replay = [FindExecutable(name='python3'), '-m', 'ros_pgpt', 'replay', bag, '--rate', rate,
              '--remap', [bag_topic, ':=', camera_topic]]
    return LaunchDescription([
        DeclareLaunchArgument('bag', description='bag directory (mcap or sqlite3)'),
        DeclareLaunchArgument('bag_topic', default_value='/camera/image_raw', description='image topic in the bag'),
        DeclareLaunchArgument('camera_topic', default_value='/camera/image_raw',
                              description='topic the node listens on'),
        DeclareLaunchArgument('rate', default_value='1.0', description='playback speed factor'),
        DeclareLaunchArgument('loop', default_value='false', choices=['true', 'false'],
                              description='replay again and again'),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(
                PathJoinSubstitution([FindPackageShare('ros_pgpt'), 'launch', 'perception.launch.py'])),
            launch_arguments={'camera_topic': camera_topic}.items(),
        ),
        ExecuteProcess(cmd=replay + ['--loop'], output='screen', condition=IfCondition(LaunchConfiguration('loop'))),
        ExecuteProcess(cmd=replay, output='screen', condition=UnlessCondition(LaunchConfiguration('loop'))),
    ])
