"""The perception node's prompt control: ``~/set_prompts`` (service) and ``~/prompts`` (topic).

Both change the standing prompts by setting the node's ``standing_prompts``
parameter, so the parameter's validation applies and ``ros2 param get``
always shows the prompts in use; a change takes effect from the next
standing run (the next camera frame when ``rate`` allows).

* ``~/set_prompts`` (ros_pgpt/srv/SetPrompts): replace, add, remove, clear or
  list; answers the resulting list, or why nothing changed.
* ``~/prompts`` (std_msgs/String): the message's text REPLACES the standing
  prompts, one prompt per line (blank and repeated lines ignored; an empty
  message clears them). One prompt per message works the same way: the latest message wins,
  so a latched (transient-local) publisher's last message is the state.
  QoS reliable, volatile, keep last 10 by default; reliability, durability,
  history and depth can be overridden with the ``qos_overrides.<topic>.subscription.*``
  parameters (e.g. durability transient_local for a latched publisher).
"""
from __future__ import annotations

MODES = ('REPLACE', 'ADD', 'REMOVE', 'CLEAR', 'LIST')  # SetPrompts.Request constants 0..4, in order
TOPIC_DEPTH = 10


def _unique(prompts) -> list[str]:
    return list(dict.fromkeys(prompts))


def prompts_from_text(text: str) -> list[str]:
    """A ~/prompts message's text -> prompts: one per line, blanks stripped, blank and repeated lines dropped."""
    return _unique(line.strip() for line in text.splitlines() if line.strip())


class PromptControl:
    """Creates ``~/set_prompts`` and ``~/prompts`` on ``node`` (a PerceptionNode)."""

    def __init__(self, node, callback_group=None):
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSPolicyKind, QoSProfile, ReliabilityPolicy
        from rclpy.qos_overriding_options import QoSOverridingOptions
        from std_msgs.msg import String

        from ros_pgpt.srv import SetPrompts

        self._node = node
        self.service = node.create_service(SetPrompts, '~/set_prompts', self._on_set_prompts,
                                           callback_group=callback_group)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=TOPIC_DEPTH, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE)
        self.subscription = node.create_subscription(
            String, '~/prompts', self._on_prompts_msg, qos, callback_group=callback_group,
            # rclpy's default overridable set lacks durability, which a latched publisher needs
            qos_overriding_options=QoSOverridingOptions([QoSPolicyKind.HISTORY, QoSPolicyKind.DEPTH,
                                                         QoSPolicyKind.RELIABILITY, QoSPolicyKind.DURABILITY]))

    def current(self) -> list[str]:
        return list(self._node.get_parameter('standing_prompts').value)

    def apply(self, prompts: list[str], source: str) -> str:
        """Set the standing prompts; returns '' on success, else the reason nothing changed."""
        from rclpy.parameter import Parameter

        result = self._node.set_parameters([Parameter('standing_prompts', Parameter.Type.STRING_ARRAY,
                                                       list(prompts))])[0]
        if not result.successful:
            return result.reason
        self._node.get_logger().info(f'standing prompts ({source}): {prompts}')
        return ''

    def _on_set_prompts(self, request, response):
        current = self.current()
        asked = _unique(p.strip() for p in request.prompts)
        mode = MODES[request.mode] if request.mode < len(MODES) else None
        message = ''
        if mode is None:
            message = (f'unknown mode {request.mode}; use ' +
                       ', '.join(f'{name} ({i})' for i, name in enumerate(MODES)))
        elif mode == 'REMOVE' and (absent := [p for p in asked if p not in current]):
            message = f'not standing prompts: {absent}; standing: {current}'
        elif mode != 'LIST':
            wanted = {'REPLACE': asked, 'ADD': _unique(current + asked), 'CLEAR': [],
                      'REMOVE': [p for p in current if p not in asked]}[mode]
            message = self.apply(wanted, f'~/set_prompts {mode}')
        if message:
            self._node.get_logger().warning(f'~/set_prompts refused: {message}')
        response.success = not message
        response.message = message
        response.prompts = self.current()
        return response

    def _on_prompts_msg(self, msg):
        reason = self.apply(prompts_from_text(msg.data), '~/prompts')
        if reason:
            self._node.get_logger().warning(f'~/prompts message ignored: {reason}')
