"""Start the ros_pgpt perception node.

    ros2 launch ros_pgpt perception.launch.py
    ros2 launch ros_pgpt perception.launch.py camera_topic:=/my_cam/image_raw input:=compressed
    ros2 launch ros_pgpt perception.launch.py params_file:=/path/to/my_params.yaml namespace:=robot1

Needs `launch` and `launch_ros` (a ROS 2 install; they are not on PyPI, so the
venv route runs `ros-pgpt node --ros-args --params-file config/perception.yaml
-r image:=/camera/image_raw` instead, which is what the tests and the demo do).
The node configures and activates itself (parameter `autostart`, default
true); with autostart:=false drive it with `ros2 lifecycle set`.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    default_params = PathJoinSubstitution([FindPackageShare('ros_pgpt'), 'config', 'perception.yaml'])
    camera_topic = LaunchConfiguration('camera_topic')
    return LaunchDescription([
        DeclareLaunchArgument('params_file', default_value=default_params,
                              description='node parameters (YAML); see docs/NODE.md'),
        DeclareLaunchArgument('camera_topic', default_value='/camera/image_raw',
                              description='sensor_msgs/Image topic (the compressed one is <camera_topic>/compressed)'),
        DeclareLaunchArgument('input', default_value='raw', choices=['raw', 'compressed'],
                              description='raw: sensor_msgs/Image; compressed: sensor_msgs/CompressedImage'),
        DeclareLaunchArgument('namespace', default_value='', description='namespace of the node'),
        DeclareLaunchArgument('autostart', default_value='true', choices=['true', 'false'],
                              description='configure + activate on start (else use ros2 lifecycle)'),
        DeclareLaunchArgument('log_level', default_value='info', description='rclpy log level'),
        Node(
            package='ros_pgpt',
            executable='perception_node',
            name='ros_pgpt',
            namespace=LaunchConfiguration('namespace'),
            parameters=[
                LaunchConfiguration('params_file'),
                {'input': LaunchConfiguration('input'),
                 'autostart': LaunchConfiguration('autostart')},
            ],
            remappings=[
                ('image', camera_topic),
                ('image/compressed', [camera_topic, '/compressed']),
            ],
            arguments=['--ros-args', '--log-level', LaunchConfiguration('log_level')],
            output='screen',
            emulate_tty=True,
        ),
    ])
