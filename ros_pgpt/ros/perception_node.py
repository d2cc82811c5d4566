"""The ros_pgpt perception node (rclpy, a managed lifecycle node).

    configure   load the model (parameters checkpoint, backend), create the
                inference worker, the ~/query service and the ~/detections
                and ~/overlay publishers (and those of node/outputs.py:
                ~/detections_2d, ~/detections_3d, ~/markers)
    activate    subscribe to the camera ("image" or "image/compressed"), and
                to depth + camera_info when depth_topic is set
    deactivate  unsubscribe; queries are answered "not active"
    cleanup     drop the model

With ``autostart`` (default) the node configures and activates itself.
``~/set_prompts`` and ``~/prompts`` (``prompt_control.py``) change the
standing prompts in any state; each frame's standing results go out as one
message, their objects tracked across frames (``ros_pgpt/ros/tracking.py``).
Threads: one executor thread runs every callback, and each is cheap: the
camera callback only stores the latest frame; a service callback checks the
request, hands a job to the inference worker and awaits its future (a
coroutine, so no thread blocks while the model runs). All model calls run on
the single worker thread (the Predictor is not thread-safe). See docs/NODE.md.
"""
from __future__ import annotations

import math
import threading
import time
import traceback
from dataclasses import dataclass

from rclpy.task import Future

from ros_pgpt.ros import conversions
from ros_pgpt.ros.depth import DepthError
from ros_pgpt.ros import params as P
from ros_pgpt.ros.prompt_control import PromptControl
from ros_pgpt.ros.outputs import NodeOutputs
from ros_pgpt.ros.worker import Busy, InferenceWorker
from ros_pgpt.ros.tracking import Observation, Tracker
from ros_pgpt.data.wording import UnknownWords

try:  # managed lifecycle node where rclpy has it (Humble+; the Kilted wheels do)
    from rclpy.lifecycle import LifecycleNode as _BaseNode
    from rclpy.lifecycle import TransitionCallbackReturn
    HAVE_LIFECYCLE = True
except ImportError:  # pragma: no cover - plain node fallback
    import enum

    from rclpy.node import Node as _BaseNode
    HAVE_LIFECYCLE = False

    class TransitionCallbackReturn(enum.IntEnum):
        SUCCESS = 97
        FAILURE = 98
        ERROR = 99

SERVICE_QUEUE_DEPTH = 100  # query requests the middleware holds until the executor takes them
LATEST_FRAME = object()  # a query's source: the camera frame chosen when it runs


@dataclass
class Frame:
    """One received camera frame (latest-frame buffer entry); converted lazily on the worker."""
    msg: object
    compressed: bool
    received: float  # time.monotonic() at reception
    seq: int
    rgb: object = None
    error: Exception | None = None

    @property
    def header(self):
        return self.msg.header

    @property
    def key(self):
        stamp = self.msg.header.stamp
        if stamp.sec == 0 and stamp.nanosec == 0:  # unstamped camera: every frame is new
            return ('camera-seq', self.seq)
        return ('camera', stamp.sec, stamp.nanosec, self.msg.header.frame_id)


class ConfigureError(Exception):
    pass


class PerceptionNode(_BaseNode):
    def __init__(self, node_name: str = 'ros_pgpt', **kwargs):
        super().__init__(node_name, **kwargs)
        from rclpy.callback_groups import ReentrantCallbackGroup

        P.declare_all(self)
        # Reentrant: a query awaiting the worker must not hold back the next query or the camera
        # (the node's default group is mutually exclusive, even on a single-threaded executor).
        self._reentrant = ReentrantCallbackGroup()
        self._configured = False
        self._active = False
        self._predictor = None
        self._worker = None
        self._sub = self._srv = self._det_pub = self._overlay_pub = None
        self._outputs: NodeOutputs | None = None
        self._frame: Frame | None = None  # the newest camera frame
        self._frame_lock = threading.Lock()
        self._held: Frame | None = None  # the camera frame the model encoded last (worker thread only)
        self._frames_received = 0
        self._last_standing = -math.inf
        self._faults: dict[str, list] = {}
        self._fault_lock = threading.Lock()
        self.last_error = ''
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._tracker = Tracker()  # standing-prompt ids; only the worker thread uses it
        # Like the parameters they set, ~/set_prompts and ~/prompts work in every lifecycle state.
        self._prompt_control = PromptControl(self, self._reentrant)

    # ------------------------------------------------------------------ parameters
    def _p(self, name):
        return self.get_parameter(name).value

    def _on_set_parameters(self, changes):
        from rcl_interfaces.msg import SetParametersResult

        limit = next((p.value for p in changes if p.name == 'max_prompt_chars'), self._p('max_prompt_chars'))
        max_tokens = self._predictor.max_visual_tokens if self._predictor is not None else None
        for p in changes:
            reason = P.validate(p.name, p.value, configured=self._configured, max_tokens=max_tokens,
                                max_prompt_chars=limit)
            if reason:
                self.get_logger().warning(f'parameter change refused: {reason}')
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _validate_all(self, max_tokens=None):
        for param in P.PARAMS:
            reason = P.validate(param.name, self._p(param.name), configured=False, max_tokens=max_tokens,
                                max_prompt_chars=self._p('max_prompt_chars'))
            if reason:
                raise ConfigureError(f'invalid parameter: {reason}')

    # ------------------------------------------------------------------ faults
    def _fault(self, kind: str, message: str):
        """Log a bad input (throttled per kind) and return a failed Query response."""
        from ros_pgpt.srv import Query

        now = time.monotonic()
        period = self._p('fault_log_period')
        with self._fault_lock:
            last, suppressed = self._faults.get(kind, (-math.inf, 0))
            if now - last >= period:
                extra = f' ({suppressed} more like it suppressed)' if suppressed else ''
                self._faults[kind] = [now, 0]
                log = True
            else:
                self._faults[kind] = [last, suppressed + 1]
                log = False
        if log:
            self.get_logger().warning(f'[{kind}] {message}{extra}')
        return Query.Response(success=False, message=message)

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state):
        try:
            self._configure()
        except ConfigureError as exc:
            self.last_error = str(exc)
            self.get_logger().error(f'configure failed: {exc}')
            self._teardown()
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def _configure(self):
        from ros_pgpt.checkpoints import default_checkpoint
        from ros_pgpt.msg import GroundedObjectArray
        from ros_pgpt.inference.backends import create_predictor
        from ros_pgpt.srv import Query
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        self._validate_all()
        checkpoint = self._p('checkpoint') or str(default_checkpoint())
        backend = self._p('backend')
        self.get_logger().info(f'loading the model from {checkpoint} (backend {backend})')
        t0 = time.perf_counter()
        try:
            self._predictor = create_predictor(checkpoint, backend=backend,
                                               match_threshold=self._p('match_threshold'),
                                               next_object_threshold=self._p('next_object_threshold'),
                                               first_object_threshold=self._p('first_object_threshold'),
                                               refine_masks=self._p('refine_masks'))
        except Exception as exc:  # noqa: BLE001 - every load failure is a configure failure
            raise ConfigureError(f'cannot load the model from {checkpoint}: {type(exc).__name__}: {exc}') from exc
        self._validate_all(self._predictor.max_visual_tokens)
        self._worker = InferenceWorker(self._p('queue_size'), on_error=self._on_worker_error)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._det_pub = self.create_publisher(GroundedObjectArray, '~/detections', reliable)
        self._overlay_pub = self.create_publisher(Image, '~/overlay', QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE))
        self._outputs = NodeOutputs(self)
        # Every request is taken and answered (busy at once when the worker's queue is full), so the
        # middleware's request queue only has to hold a burst; its default depth (10) dropped requests.
        self._srv = self.create_service(Query, '~/query', self._on_query, callback_group=self._reentrant,
                                        qos_profile=QoSProfile(depth=SERVICE_QUEUE_DEPTH,
                                                               reliability=ReliabilityPolicy.RELIABLE))
        self._configured = True
        engine = self._predictor.backend
        self.get_logger().info(
            f'configured in {time.perf_counter() - t0:.1f} s: backend {engine["backend"]} {engine["precision"]} '
            f'({engine["reason"]}); up to {self._predictor.max_visual_tokens} visual tokens; service '
            f'{self.resolve_service_name("~/query")}')

    def on_activate(self, state):
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage, Image

        if HAVE_LIFECYCLE:
            super().on_activate(state)
        compressed = self._p('input') == 'compressed'
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self._p('qos_depth'),
                         reliability=(ReliabilityPolicy.RELIABLE if self._p('qos_reliability') == 'reliable'
                                      else ReliabilityPolicy.BEST_EFFORT))
        self._sub = self.create_subscription(
            CompressedImage if compressed else Image, 'image/compressed' if compressed else 'image',
            lambda msg: self._on_image(msg, compressed), qos, callback_group=self._reentrant)
        depth = self._outputs.subscribe()
        self._active = True
        self.get_logger().info(
            f'ready: serving {self.resolve_service_name("~/query")}; camera {self._sub.topic_name} '
            f'({"CompressedImage" if compressed else "Image"}, {self._p("qos_reliability")}, depth '
            f'{self._p("qos_depth")}); {depth}; detections on {self._det_pub.topic_name}')
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state):
        if HAVE_LIFECYCLE:
            super().on_deactivate(state)
        self._active = False
        if self._sub is not None:
            self.destroy_subscription(self._sub)
            self._sub = None
        self._outputs.unsubscribe()
        with self._frame_lock:  # a frame from before deactivation must not answer "stale" after activation
            self._frame = self._held = None
        self.get_logger().info('deactivated: camera unsubscribed, queries answered "not active"')
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state):
        self._teardown()
        self.get_logger().info('cleaned up: model unloaded')
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state):
        self._active = False
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state):
        self._active = False
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def _teardown(self):
        self.stop_serving()
        for attr, destroy in (('_srv', self.destroy_service), ('_det_pub', self.destroy_publisher),
                              ('_overlay_pub', self.destroy_publisher)):
            if getattr(self, attr) is not None:
                destroy(getattr(self, attr))
                setattr(self, attr, None)
        if self._outputs is not None:
            self._outputs.destroy()
            self._outputs = None
        self._predictor = None
        self._configured = False

    def start(self) -> bool:
        """Configure and activate (autostart). False (and ``last_error``) when configure failed."""
        if HAVE_LIFECYCLE:
            if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                return False
            return self.trigger_activate() == TransitionCallbackReturn.SUCCESS
        if self.on_configure(None) != TransitionCallbackReturn.SUCCESS:
            return False
        return self.on_activate(None) == TransitionCallbackReturn.SUCCESS

    def close(self):
        self._teardown()

    def stop_serving(self) -> None:
        """First step of a clean exit: no new camera frames or standing runs; the job in flight
        finishes and every waiting query is answered "the node is shutting down" (the executor must
        spin a little longer to send those answers)."""
        self._active = False
        if self._sub is not None:
            self.destroy_subscription(self._sub)
            self._sub = None
        if self._worker is not None:
            self._worker.stop()
            self._worker = None

    @property
    def state_label(self) -> str:
        return 'active' if self._active else 'inactive' if self._configured else 'unconfigured'

    # ------------------------------------------------------------------ camera
    def _camera_topic(self) -> str:
        if self._sub is not None:
            return self._sub.topic_name
        compressed = self._p('input') == 'compressed'
        return self.resolve_topic_name('image/compressed' if compressed else 'image')

    def _on_image(self, msg, compressed: bool):
        now = time.monotonic()
        with self._frame_lock:
            self._frames_received += 1
            frame = Frame(msg=msg, compressed=compressed, received=now, seq=self._frames_received)
            self._frame = frame
        if frame.seq == 1:
            what = f'{msg.format}, {len(msg.data)} bytes' if compressed else f'{msg.width}x{msg.height} {msg.encoding}'
            self.get_logger().info(f'first frame on {self._camera_topic()}: {what}')
        prompts = self._p('standing_prompts')
        if prompts and self._active and self._worker is not None:
            rate = self._p('rate')
            period = 1.0 / rate if rate > 0 else 0.0
            due = self._last_standing + period
            if now >= due:
                # Keep to the rate's grid (a frame arrives up to a frame period after the due time);
                # restart it from now after a pause rather than bursting to catch up.
                self._last_standing = due if now - due < period else now
                self._worker.submit_standing(lambda: self._run_standing(frame))

    def _frame_rgb(self, frame: Frame):
        """Decode a camera frame once (worker thread); raises ImageError."""
        if frame.rgb is None and frame.error is None:
            try:
                convert = conversions.compressed_msg_to_rgb if frame.compressed else conversions.image_msg_to_rgb
                frame.rgb = convert(frame.msg, self._p('max_image_pixels'))
            except conversions.ImageError as exc:
                frame.error = exc
        if frame.error is not None:
            raise frame.error
        return frame.rgb

    def _on_worker_error(self, exc):
        self.get_logger().error(f'standing prompts failed: {type(exc).__name__}: {exc}\n'
                                f'{"".join(traceback.format_exception(exc))}')

    # ------------------------------------------------------------------ standing prompts
    def _run_standing(self, frame: Frame):
        predictor, outputs = self._predictor, self._outputs  # teardown may drop them meanwhile
        if predictor is None or outputs is None or not self._active:
            return
        try:
            rgb = self._frame_rgb(frame)
        except conversions.ImageError as exc:
            self._fault(exc.kind, f'standing prompts skipped a frame from {self._camera_topic()}: {exc}')
            return
        masks, threshold = self._p('masks'), self._p('score_threshold')
        tokens = self._p('visual_tokens') or None
        depth = outputs.depth_for_frame(frame.header, rgb.shape[1::-1])
        prompts = list(self._p('standing_prompts'))
        if not prompts:  # cleared after this run was queued
            return
        results = []
        t0 = time.perf_counter()
        self._held = frame
        for prompt in prompts:
            try:
                # 3D needs the masks, whether or not they are sent
                result = predictor.ground(rgb, prompt, visual_tokens=tokens, masks=masks or depth is not None,
                                          key=frame.key)
            except ValueError as exc:
                self._fault('standing', f'standing prompt {prompt!r}: {exc}')
                continue
            msg = conversions.result_to_msg(result, frame.header, score_threshold=threshold, masks=masks,
                                       full_frame_masks=self._p('full_frame_masks'))
            outputs.add_3d(msg, result, depth)
            results.append(msg)
        if self._p('tracking'):
            self._track(prompts, results)
        msg = conversions.standing_msg(results, frame.header)
        msg.total_ms = float((time.perf_counter() - t0) * 1e3)
        self._publish(msg, depth)
        if self._overlay_pub is not None and self._overlay_pub.get_subscription_count() > 0:
            image = conversions.draw_overlay(rgb, conversions.detections_from_msg(msg), title=' | '.join(prompts))
            self._overlay_pub.publish(conversions.rgb_to_image_msg(image, 'rgb8', frame.header))

    def _track(self, prompts, results):
        """Set each standing object's track_id (worker thread: the tracker is the worker's alone)."""
        self._tracker.min_iou, self._tracker.memory = self._p('track_iou'), self._p('track_memory')
        self._tracker.keep_only(prompts)
        for result in results:
            observations = [Observation((o.x_min, o.y_min, o.x_max, o.y_max), conversions.mask_from_image_msg(o.mask),
                                        (o.mask_x_offset, o.mask_y_offset)) for o in result.objects]
            for obj, track_id in zip(result.objects, self._tracker.update(result.prompt, observations)):
                obj.track_id = track_id

    def _publish(self, msg, depth):
        """A result on ~/detections and, to whoever subscribes, as vision_msgs and markers."""
        if self._det_pub is not None:
            self._det_pub.publish(msg)
        if self._outputs is not None:
            self._outputs.publish(msg, depth)

    # ------------------------------------------------------------------ the service
    async def _on_query(self, request, response):
        """A coroutine on the executor: cheap checks here, the model on the worker (awaited)."""
        t0 = time.perf_counter()
        if not self._active or self._worker is None or self._predictor is None:
            return self._fault('inactive', f'the node is not active (lifecycle state: {self.state_label})')
        prompt = request.prompt
        limit = self._p('max_prompt_chars')
        if not prompt.strip():
            return self._fault('prompt', 'the prompt is empty')
        if len(prompt) > limit:
            return self._fault('prompt', f'the prompt has {len(prompt)} characters; the limit is {limit} '
                                         f'(parameter max_prompt_chars)')
        try:
            boxes = conversions.boxes_from_flat(request.boxes)
        except ValueError as exc:
            return self._fault('boxes', str(exc))
        maximum = self._predictor.max_visual_tokens
        tokens = int(request.visual_tokens) or int(self._p('visual_tokens')) or maximum
        if tokens > maximum:
            return self._fault('visual_tokens', f'visual_tokens={request.visual_tokens} exceeds the model\'s '
                                                f'maximum {maximum}')
        if conversions.is_empty_image(request.image):
            fault = self._latest_frame_fault()
            if fault is not None:
                return fault
            source = LATEST_FRAME  # chosen when the query runs (_query_frame)
        else:
            source = request.image
        future, executor = Future(), self.executor

        def done(result, error):  # worker thread: complete the future, wake the executor to resume us
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)
            executor.wake()
        try:
            self._worker.submit_query(lambda: self._run_query(request, source, tokens, boxes, t0), done)
        except Busy as exc:
            return self._fault('busy', str(exc))
        try:
            return await future
        except Busy as exc:
            return self._fault('busy', str(exc))
        except Exception as exc:  # noqa: BLE001 - _run_query answers its own errors; keep serving anyway
            return self._fault('internal', f'internal error: {type(exc).__name__}: {exc}')

    def _latest_frame_fault(self, frame: Frame | None = None):
        """The fault response when there is no usable camera frame (default: the newest), else None."""
        if frame is None:
            with self._frame_lock:
                frame = self._frame
        if frame is None:
            return self._fault('no_frame', f'no image in the request and no frame received on '
                                           f'{self._camera_topic()} yet')
        age, max_age = time.monotonic() - frame.received, self._p('max_image_age')
        if max_age > 0 and age > max_age:
            return self._fault('stale', f'the latest frame from {self._camera_topic()} is {age:.1f} s old '
                                        f'(max_image_age {max_age:g} s); is the camera still publishing?')
        return None

    def _query_frame(self):
        """The frame a latest-frame query answers on, chosen as it runs (worker thread): the frame the
        model holds while it arrived at most frame_reuse_s ago, else the newest. A fault response when
        there is none or it is stale."""
        with self._frame_lock:
            newest, held = self._frame, self._held
        fault = self._latest_frame_fault(newest)
        if fault is not None:
            return fault
        reuse = self._p('frame_reuse_s')
        if held is not None and reuse > 0 and time.monotonic() - held.received <= reuse:
            return held
        return newest

    def _run_query(self, request, source, tokens: int, boxes, t0: float):
        from ros_pgpt.srv import Query

        predictor, outputs = self._predictor, self._outputs  # teardown may drop them meanwhile
        if predictor is None or outputs is None:
            return self._fault('inactive', f'the node is not active (lifecycle state: {self.state_label})')
        tc = time.perf_counter()
        if source is LATEST_FRAME:
            source = self._query_frame()
            if not isinstance(source, Frame):
                return source  # no frame, or a stale one
        try:
            if isinstance(source, Frame):
                where, key, header = f'latest frame from {self._camera_topic()}', source.key, source.header
                rgb = self._frame_rgb(source)
                self._held = source
            else:
                where, key, header = 'request image', conversions.image_key(source), source.header
                rgb = conversions.image_msg_to_rgb(source, self._p('max_image_pixels'))
                self._held = None
            depth = outputs.depth_for_query(request, header, rgb.shape[1::-1])
        except conversions.ImageError as exc:
            return self._fault(exc.kind, f'{where}: {exc}')
        except DepthError as exc:
            return self._fault('depth', str(exc))
        convert_ms = (time.perf_counter() - tc) * 1e3
        try:
            # 3D needs the masks, whether or not they are sent
            result = predictor.ground(rgb, request.prompt, visual_tokens=tokens,
                                      masks=request.masks or depth is not None, boxes=boxes, key=key)
        except UnknownWords as exc:  # a refusal, not "not found": the model cannot know what was asked
            return self._fault('unknown_words', str(exc))
        except ValueError as exc:
            return self._fault('model_input', str(exc))
        except Exception as exc:  # noqa: BLE001 - keep serving; report it
            self.get_logger().error(f'query {request.prompt!r} failed:\n{traceback.format_exc()}')
            return self._fault('internal', f'internal error: {type(exc).__name__}: {exc}')
        tp = time.perf_counter()
        threshold = self._p('score_threshold')
        msg = conversions.result_to_msg(result, header, score_threshold=threshold, masks=request.masks,
                                   full_frame_masks=request.full_frame_masks or self._p('full_frame_masks'),
                                   extra_ms={'preprocess': convert_ms})
        outputs.add_3d(msg, result, depth)
        msg.postprocess_ms = float(msg.postprocess_ms + (time.perf_counter() - tp) * 1e3)
        msg.total_ms = float((time.perf_counter() - t0) * 1e3)
        self._publish(msg, depth)
        if self._overlay_pub is not None and self._overlay_pub.get_subscription_count() > 0:
            image = conversions.draw_overlay(rgb, conversions.detections_from_result(result, threshold), title=request.prompt)
            self._overlay_pub.publish(conversions.rgb_to_image_msg(image, 'rgb8', header))
        return Query.Response(success=True, message='', result=msg)
