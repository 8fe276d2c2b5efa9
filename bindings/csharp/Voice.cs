// The idiomatic C# layer over Voice.Native.g.cs (hand-written): SafeHandles that free each handle
// once, VoiceException carrying the library's error text, UTF-8 strings both ways, and event
// delivery by callback (IL2CPP-safe) or by polling. Compile with unsafe code allowed.
using System;
using System.Runtime.InteropServices;
using System.Text;

namespace Voice
{
    /// <summary>
    /// Marks a static method that native code calls back. IL2CPP recognises the attribute by its
    /// name and generates a native entry point for the method; defined here so the binding needs
    /// no UnityEngine reference (Mono and .NET ignore it).
    /// </summary>
    [AttributeUsage(AttributeTargets.Method)]
    public sealed class MonoPInvokeCallbackAttribute : Attribute
    {
        /// <summary>The delegate type the method is called through.</summary>
        public MonoPInvokeCallbackAttribute(Type delegateType) { DelegateType = delegateType; }

        /// <summary>The delegate type the method is called through.</summary>
        public Type DelegateType { get; private set; }
    }

    /// <summary>A call into the voice library failed: <see cref="Code"/> and the library's text for it.</summary>
    public sealed class VoiceException : Exception
    {
        /// <summary>The result code the library returned.</summary>
        public voice_result Code { get; private set; }

        /// <summary>An exception for `code` from `call`, with the library's message.</summary>
        public VoiceException(voice_result code, string call)
            : base(call + ": " + VoiceLibrary.ErrorMessage(code) + " (" + code + ")")
        {
            Code = code;
        }

        /// <summary>Throws unless `r` is VOICE_OK.</summary>
        public static void Check(voice_result r, string call)
        {
            if (r != voice_result.VOICE_OK) throw new VoiceException(r, call);
        }
    }

    /// <summary>Library-wide information.</summary>
    public static class VoiceLibrary
    {
        /// <summary>The library version string (e.g. "0.1.0").</summary>
        public static string Version { get { return Native.Utf8Read(Native.voice_version()); } }

        /// <summary>The C ABI version of the loaded library.</summary>
        public static uint AbiVersion { get { return Native.voice_abi_version(); } }

        /// <summary>Throws when the loaded library's ABI differs from the one this binding was generated for.</summary>
        public static void CheckAbi()
        {
            uint got = Native.voice_abi_version();
            if (got != (uint)Native.VOICE_ABI_VERSION)
                throw new InvalidOperationException("libvoice has ABI " + got + ", the C# binding expects "
                    + Native.VOICE_ABI_VERSION + ": regenerate Voice.Native.g.cs or ship the matching library");
        }

        /// <summary>The library's text for a result code (asks for the size first, so nothing is cut).</summary>
        public static string ErrorMessage(voice_result code)
        {
            UIntPtr need;
            Native.voice_error_message((uint)code, null, UIntPtr.Zero, out need);
            var buf = new byte[(int)need + 1];
            UIntPtr written;
            if (Native.voice_error_message((uint)code, buf, (UIntPtr)buf.Length, out written) != voice_result.VOICE_OK)
                return "error " + (uint)code;
            return Encoding.UTF8.GetString(buf, 0, (int)written);
        }
    }

    /// <summary>Base of the three handle types: frees with the matching voice_*_free exactly once.</summary>
    public abstract class VoiceHandle : SafeHandle
    {
        /// <summary>An empty handle (filled by the constructor of the owning type).</summary>
        protected VoiceHandle() : base(IntPtr.Zero, true) { }

        /// <inheritdoc/>
        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }

        /// <summary>Takes ownership of a pointer a voice_*_new returned.</summary>
        internal void Adopt(IntPtr p) { SetHandle(p); }

        /// <summary>
        /// Begins a native call: the pointer, kept from being freed (by Dispose on another thread or
        /// the finalizer) until <see cref="Leave"/>. A disposed handle throws a VoiceException with
        /// VOICE_ERR_INVALID_HANDLE, the code the library gives for a freed handle.
        /// </summary>
        internal IntPtr Enter(string call)
        {
            bool ok = false;
            if (!IsClosed && !IsInvalid)
            {
                try { DangerousAddRef(ref ok); }
                catch (ObjectDisposedException) { ok = false; }
            }
            if (!ok) throw new VoiceException(voice_result.VOICE_ERR_INVALID_HANDLE, call);
            return handle;
        }

        /// <summary>Ends a native call begun with <see cref="Enter"/>.</summary>
        internal void Leave() { DangerousRelease(); }
    }

    /// <summary>Owns a voice_client (voice_client_free on release).</summary>
    public sealed class ClientHandle : VoiceHandle
    {
        /// <summary>The callback state given to the library as userdata, freed after the client.</summary>
        internal GCHandle Callback;

        /// <inheritdoc/>
        protected override bool ReleaseHandle()
        {
            // voice_client_free joins the callback thread: after it no callback can run.
            bool ok = Native.voice_client_free(handle) == voice_result.VOICE_OK;
            if (ok && Callback.IsAllocated) Callback.Free();
            return ok;
        }
    }

    /// <summary>Owns a voice_encoder (voice_encoder_free on release).</summary>
    public sealed class EncoderHandle : VoiceHandle
    {
        /// <inheritdoc/>
        protected override bool ReleaseHandle() { return Native.voice_encoder_free(handle) == voice_result.VOICE_OK; }
    }

    /// <summary>Owns a voice_receiver (voice_receiver_free on release).</summary>
    public sealed class ReceiverHandle : VoiceHandle
    {
        /// <inheritdoc/>
        protected override bool ReleaseHandle() { return Native.voice_receiver_free(handle) == voice_result.VOICE_OK; }
    }

    /// <summary>One client event with its strings decoded (the raw struct is in <see cref="Raw"/>).</summary>
    public sealed class VoiceEvent
    {
        /// <summary>Native.VOICE_EVENT_*.</summary>
        public uint Kind;
        /// <summary>The session the event is about (0 if none).</summary>
        public uint Session;
        /// <summary>The channel the event is about (0 if none).</summary>
        public uint Channel;
        /// <summary>Error code for VOICE_EVENT_ERROR.</summary>
        public uint Code;
        /// <summary>Speaking started (VOICE_EVENT_SPEAKING).</summary>
        public bool Flag;
        /// <summary>Whisper (VOICE_EVENT_SPEAKING).</summary>
        public bool Flag2;
        /// <summary>RTT in ms, chat time in ms, or member count.</summary>
        public double Value;
        /// <summary>User or channel name.</summary>
        public string Name;
        /// <summary>Chat text, error message or reason.</summary>
        public string Text;
        /// <summary>The event as the library wrote it (fields added to the header appear here first).</summary>
        public voice_event Raw;

        /// <summary>Decodes a native event.</summary>
        public static unsafe VoiceEvent From(ref voice_event e)
        {
            var v = new VoiceEvent
            {
                Kind = e.kind,
                Session = e.session,
                Channel = e.channel,
                Code = e.code,
                Flag = e.flag,
                Flag2 = e.flag2,
                Value = e.value,
                Raw = e,
            };
            fixed (byte* n = e.name) v.Name = Native.Utf8Read(n, e.name_len, voice_event.name_capacity);
            fixed (byte* t = e.text) v.Text = Native.Utf8Read(t, e.text_len, voice_event.text_capacity);
            return v;
        }

        /// <summary>The VOICE_EVENT_* constant's name for <see cref="Kind"/>.</summary>
        public string KindName
        {
            get
            {
                foreach (var f in typeof(Native).GetFields())
                    if (f.Name.StartsWith("VOICE_EVENT_") && f.FieldType == typeof(int) && (int)f.GetValue(null) == (int)Kind)
                        return f.Name;
                return "VOICE_EVENT_" + Kind;
            }
        }

        /// <inheritdoc/>
        public override string ToString()
        {
            return KindName + " session=" + Session + " channel=" + Channel + " name=" + Name + " text=" + Text;
        }
    }

    /// <summary>Settings for <see cref="VoiceClient"/>: the strings as C# strings, every other field in <see cref="Raw"/>.</summary>
    public sealed class ClientConfig
    {
        /// <summary>The library's defaults (push-to-talk, own devices, reconnect, default channel); non-string fields.</summary>
        public voice_client_config Raw;
        /// <summary>Relay address "host:port". Required.</summary>
        public string Server;
        /// <summary>Display name, 1..=64 bytes of UTF-8. Required.</summary>
        public string Name;
        /// <summary>The relay's certificate fingerprint to pin ("sha256:…"), or null.</summary>
        public string TlsFingerprint;
        /// <summary>A PEM file of CA certificates to trust, or null.</summary>
        public string TlsCaFile;
        /// <summary>With VOICE_AUDIO_FILES: WAV to play, or null.</summary>
        public string InputWav;
        /// <summary>With VOICE_AUDIO_FILES: WAV to record to, or null.</summary>
        public string OutputWav;
        /// <summary>The access token presented in Hello (a JWT from your backend, or
        /// `relay token --name NAME` for development); null only for a relay started with --open.
        /// Never logged.</summary>
        public string AccessToken;

        /// <summary>A configuration with the library's defaults.</summary>
        public ClientConfig()
        {
            VoiceException.Check(Native.voice_client_config_default(ref Raw), "voice_client_config_default");
        }

        /// <summary>Native.VOICE_AUDIO_*.</summary>
        public uint Audio { get { return Raw.audio; } set { Raw.audio = value; } }
        /// <summary>Native.VOICE_TRANSMIT_*.</summary>
        public uint TransmitMode { get { return Raw.transmit_mode; } set { Raw.transmit_mode = value; } }
        /// <summary>Native.VOICE_CAPTURE_*: capture processing (echo cancellation, noise suppression, gain,
        /// speech detection) on, off, or AUTO (on with the library's own devices).</summary>
        public uint CaptureMode { get { return Raw.capture_mode; } set { Raw.capture_mode = value; } }
        /// <summary>With capture processing: how many dB under the talker's level speech may be and
        /// still open the microphone (0..=40, default 6); voices further down (across the room, a TV)
        /// do not. 0 turns the gate off.</summary>
        public float BackgroundVoiceMarginDb { get { return Raw.capture.background_voice_margin_db; } set { Raw.capture.background_voice_margin_db = value; } }
        /// <summary>Reconnect with backoff when the connection fails or drops.</summary>
        public bool Reconnect { get { return Raw.reconnect; } set { Raw.reconnect = value; } }
        /// <summary>Channel to join once connected; 0 = the relay's default.</summary>
        public uint InitialChannel { get { return Raw.initial_channel; } set { Raw.initial_channel = value; } }
        /// <summary>Encoder bitrate in bits/s; 0 = the engine default.</summary>
        public uint Bitrate { get { return Raw.bitrate; } set { Raw.bitrate = value; } }
        /// <summary>Accept the relay's certificate on first use (no fingerprint, no CA file).</summary>
        public bool TrustOnFirstUse { get { return Raw.tls_trust_on_first_use; } set { Raw.tls_trust_on_first_use = value; } }
        /// <summary>Development only: no TLS.</summary>
        public bool InsecurePlaintext { get { return Raw.insecure_plaintext; } set { Raw.insecure_plaintext = value; } }
    }

    /// <summary>
    /// A voice client connected to a relay. Dispose it (Unity: OnDestroy) to say goodbye and stop its
    /// threads. Every method may be called from any thread except where noted; failures throw
    /// <see cref="VoiceException"/>.
    /// </summary>
    public sealed class VoiceClient : IDisposable
    {
        readonly ClientHandle h = new ClientHandle();

        /// <summary>Called on the library's event thread for each event (see <see cref="SetEventCallback"/>).</summary>
        public delegate void EventHandler(VoiceEvent e);

        /// <summary>Starts a client (connecting happens in the background; watch the events).</summary>
        public VoiceClient(ClientConfig config)
        {
            VoiceLibrary.CheckAbi();
            voice_client_config c = config.Raw;
            // The library copies the configuration and its strings during voice_client_new.
            var strings = new IntPtr[7];
            try
            {
                c.server = strings[0] = Native.Utf8Alloc(config.Server);
                c.name = strings[1] = Native.Utf8Alloc(config.Name);
                c.tls_fingerprint = strings[2] = Native.Utf8Alloc(config.TlsFingerprint);
                c.tls_ca_file = strings[3] = Native.Utf8Alloc(config.TlsCaFile);
                c.input_wav = strings[4] = Native.Utf8Alloc(config.InputWav);
                c.output_wav = strings[5] = Native.Utf8Alloc(config.OutputWav);
                c.access_token = strings[6] = Native.Utf8Alloc(config.AccessToken);
                IntPtr p;
                VoiceException.Check(Native.voice_client_new(ref c, out p), "voice_client_new");
                h.Adopt(p);
            }
            finally
            {
                foreach (var s in strings) Native.Utf8Free(s);
            }
        }

        /// <summary>The owned handle (for Native calls: use DangerousAddRef/DangerousRelease around them).</summary>
        public ClientHandle Handle { get { return h; } }

        /// <summary>Frees the client (stops its engine and callback threads). Idempotent.</summary>
        public void Dispose() { h.Dispose(); }

        void Call(voice_result r, string call)
        {
            VoiceException.Check(r, call);
        }

        /// <summary>Joins (or switches to) a channel.</summary>
        public void Join(uint channel)
        {
            IntPtr p = h.Enter("voice_client_join");
            try { Call(Native.voice_client_join(p, channel), "voice_client_join"); } finally { h.Leave(); }
        }

        /// <summary>Leaves the current channel.</summary>
        public void Leave()
        {
            IntPtr p = h.Enter("voice_client_leave");
            try { Call(Native.voice_client_leave(p), "voice_client_leave"); } finally { h.Leave(); }
        }

        /// <summary>Whispers to a session instead of the channel; 0 returns to the channel.</summary>
        public void Whisper(uint session)
        {
            IntPtr p = h.Enter("voice_client_whisper");
            try { Call(Native.voice_client_whisper(p, session), "voice_client_whisper"); } finally { h.Leave(); }
        }

        /// <summary>Push-to-talk key state.</summary>
        public void SetPushToTalk(bool held)
        {
            IntPtr p = h.Enter("voice_client_set_push_to_talk");
            try { Call(Native.voice_client_set_push_to_talk(p, held), "voice_client_set_push_to_talk"); } finally { h.Leave(); }
        }

        /// <summary>Mutes or unmutes the microphone.</summary>
        public void SetMuted(bool muted)
        {
            IntPtr p = h.Enter("voice_client_set_muted");
            try { Call(Native.voice_client_set_muted(p, muted), "voice_client_set_muted"); } finally { h.Leave(); }
        }

        /// <summary>Deafens (silences all output) or undeafens.</summary>
        public void SetDeafened(bool deafened)
        {
            IntPtr p = h.Enter("voice_client_set_deafened");
            try { Call(Native.voice_client_set_deafened(p, deafened), "voice_client_set_deafened"); } finally { h.Leave(); }
        }

        /// <summary>Mutes one user locally.</summary>
        public void SetUserMuted(uint session, bool muted)
        {
            IntPtr p = h.Enter("voice_client_set_user_muted");
            try { Call(Native.voice_client_set_user_muted(p, session, muted), "voice_client_set_user_muted"); } finally { h.Leave(); }
        }

        /// <summary>One user's volume: 1.0 unchanged, 0.0 silent, up to 4.0.</summary>
        public void SetUserVolume(uint session, float volume)
        {
            IntPtr p = h.Enter("voice_client_set_user_volume");
            try { Call(Native.voice_client_set_user_volume(p, session, volume), "voice_client_set_user_volume"); } finally { h.Leave(); }
        }

        /// <summary>Changes the transmit mode (Native.VOICE_TRANSMIT_*).</summary>
        public void SetTransmitMode(uint mode)
        {
            IntPtr p = h.Enter("voice_client_set_transmit_mode");
            try { Call(Native.voice_client_set_transmit_mode(p, mode), "voice_client_set_transmit_mode"); } finally { h.Leave(); }
        }

        /// <summary>Asks the relay for every channel with its members (CHANNEL / MEMBER events).</summary>
        public void RequestChannels()
        {
            IntPtr p = h.Enter("voice_client_request_channels");
            try { Call(Native.voice_client_request_channels(p), "voice_client_request_channels"); } finally { h.Leave(); }
        }

        /// <summary>
        /// Asks the relay to remove `session` (needs the admin claim in our access token; otherwise an
        /// ERROR event with code 11, Forbidden). The target gets a REMOVED event; we get USER_REMOVED.
        /// `reason` (null: none) is shown to the target.
        /// </summary>
        public void Kick(uint session, string reason = null)
        {
            byte[] r = reason == null ? null : Native.Utf8z(reason);
            IntPtr p = h.Enter("voice_client_kick");
            try { Call(Native.voice_client_kick(p, session, r), "voice_client_kick"); } finally { h.Leave(); }
        }

        /// <summary>
        /// As <see cref="Kick"/>, and the relay refuses the user for `durationSecs` seconds (0: the relay's
        /// default length).
        /// </summary>
        public void Ban(uint session, string reason = null, uint durationSecs = 0)
        {
            byte[] r = reason == null ? null : Native.Utf8z(reason);
            IntPtr p = h.Enter("voice_client_ban");
            try { Call(Native.voice_client_ban(p, session, r, durationSecs), "voice_client_ban"); } finally { h.Leave(); }
        }

        /// <summary>
        /// Switches capture to the input device named `name` (null or "": the default device) without
        /// reconnecting. If it cannot be opened the current input stays, a VoiceException with
        /// VOICE_ERR_AUDIO is thrown and an AUDIO_NOTICE event says why.
        /// </summary>
        public void SetInputDevice(string name = null)
        {
            byte[] n = Native.Utf8z(name);
            IntPtr p = h.Enter("voice_client_set_input_device");
            try { Call(Native.voice_client_set_input_device(p, n), "voice_client_set_input_device"); } finally { h.Leave(); }
        }

        /// <summary>As <see cref="SetInputDevice"/>, for playback.</summary>
        public void SetOutputDevice(string name = null)
        {
            byte[] n = Native.Utf8z(name);
            IntPtr p = h.Enter("voice_client_set_output_device");
            try { Call(Native.voice_client_set_output_device(p, n), "voice_client_set_output_device"); } finally { h.Leave(); }
        }

        /// <summary>Switches capture to a WAV file (played once or looped) without reconnecting.</summary>
        public void SetInputWav(string path, bool looped = false)
        {
            byte[] b = Native.Utf8z(path);
            IntPtr p = h.Enter("voice_client_set_input_wav");
            try { Call(Native.voice_client_set_input_wav(p, b, looped), "voice_client_set_input_wav"); } finally { h.Leave(); }
        }

        /// <summary>Switches playback to recording into a new WAV file without reconnecting (the recording it replaces is finalised).</summary>
        public void SetOutputWav(string path)
        {
            byte[] b = Native.Utf8z(path);
            IntPtr p = h.Enter("voice_client_set_output_wav");
            try { Call(Native.voice_client_set_output_wav(p, b), "voice_client_set_output_wav"); } finally { h.Leave(); }
        }

        /// <summary>Sends chat to the current channel (1..=2000 bytes of UTF-8, no NUL).</summary>
        public void SendChat(string text)
        {
            byte[] b = Encoding.UTF8.GetBytes(text ?? "");
            IntPtr p = h.Enter("voice_client_send_chat");
            try { Call(Native.voice_client_send_chat(p, b, (UIntPtr)b.Length), "voice_client_send_chat"); } finally { h.Leave(); }
        }

        /// <summary>
        /// Takes the next event, if any (the polling alternative to <see cref="SetEventCallback"/>; e.g.
        /// drain it in Unity's Update until it returns false). Returns none while a callback is set.
        /// </summary>
        public bool PollEvent(out VoiceEvent ev)
        {
            var raw = new voice_event();
            bool got;
            IntPtr p = h.Enter("voice_client_poll_event");
            // The header promises no polled events while a callback is set; libraries before the
            // fix of voice_client_poll_event raced the callback thread for them: kept here too.
            if (h.Callback.IsAllocated)
            {
                h.Leave();
                ev = null;
                return false;
            }
            try { Call(Native.voice_client_poll_event(p, ref raw, out got), "voice_client_poll_event"); } finally { h.Leave(); }
            ev = got ? VoiceEvent.From(ref raw) : null;
            return got;
        }

        /// <summary>
        /// Delivers every event to `handler` on the library's thread "voice-ffi-events" (not Unity's main
        /// thread: queue the events and apply them in Update). null clears it and events are polled again.
        /// An exception thrown by the handler is caught and dropped. The handler must not dispose this
        /// client nor call SetEventCallback.
        /// </summary>
        public void SetEventCallback(EventHandler handler)
        {
            IntPtr p = h.Enter("voice_client_set_event_callback");
            try
            {
                GCHandle old = h.Callback;
                if (handler == null)
                {
                    Call(Native.voice_client_set_event_callback(p, IntPtr.Zero, IntPtr.Zero), "voice_client_set_event_callback");
                    h.Callback = default(GCHandle);
                }
                else
                {
                    GCHandle state = GCHandle.Alloc(handler);
                    voice_result r = Native.voice_client_set_event_callback(p, Trampoline.Pointer, GCHandle.ToIntPtr(state));
                    if (r != voice_result.VOICE_OK)
                    {
                        state.Free();
                        throw new VoiceException(r, "voice_client_set_event_callback");
                    }
                    h.Callback = state;
                }
                // The library joined the previous callback thread: the old state is unused now.
                if (old.IsAllocated) old.Free();
            }
            finally { h.Leave(); }
        }

        /// <summary>A statistics snapshot (waits up to 1.5 s for the engine thread).</summary>
        public voice_stats Stats()
        {
            var s = new voice_stats();
            IntPtr p = h.Enter("voice_client_stats");
            try { Call(Native.voice_client_stats(p, ref s), "voice_client_stats"); } finally { h.Leave(); }
            return s;
        }

        /// <summary>What capture processing measured on the last frame (speech probability, echo removed
        /// and its delay); null when processing is off (VOICE_CAPTURE_OFF, or AUTO with application audio).</summary>
        public voice_capture_stats? CaptureStats()
        {
            var s = new voice_capture_stats();
            IntPtr p = h.Enter("voice_client_capture_stats");
            try
            {
                voice_result r = Native.voice_client_capture_stats(p, ref s);
                if (r == voice_result.VOICE_ERR_UNSUPPORTED) return null;
                Call(r, "voice_client_capture_stats");
            }
            finally { h.Leave(); }
            return s;
        }

        /// <summary>With VOICE_AUDIO_APP: queues the first `count` samples (48 kHz mono); returns how many fitted.</summary>
        public int PushCapture(short[] pcm, int count)
        {
            if (pcm == null || (uint)count > (uint)pcm.Length) throw new ArgumentOutOfRangeException("count");
            UIntPtr accepted;
            IntPtr p = h.Enter("voice_client_push_capture");
            try { Call(Native.voice_client_push_capture(p, pcm, (UIntPtr)count, out accepted), "voice_client_push_capture"); } finally { h.Leave(); }
            return (int)accepted;
        }

        /// <summary>With VOICE_AUDIO_APP: fills the first `count` samples with the mix; returns how many came from the engine.</summary>
        public int PullPlayback(short[] pcm, int count)
        {
            if (pcm == null || (uint)count > (uint)pcm.Length) throw new ArgumentOutOfRangeException("count");
            UIntPtr written;
            IntPtr p = h.Enter("voice_client_pull_playback");
            try { Call(Native.voice_client_pull_playback(p, pcm, (UIntPtr)count, out written), "voice_client_pull_playback"); } finally { h.Leave(); }
            return (int)written;
        }

        // The one native entry point for every client's callback: a static method (IL2CPP cannot
        // call back into an instance delegate) reached through a delegate that lives as long as the
        // program; the client is found through the GCHandle passed as userdata.
        static class Trampoline
        {
            static readonly voice_event_callback Delegate = OnEvent;
            internal static readonly IntPtr Pointer = Marshal.GetFunctionPointerForDelegate(Delegate);

            [MonoPInvokeCallback(typeof(voice_event_callback))]
            static unsafe void OnEvent(IntPtr userdata, IntPtr ev)
            {
                try
                {
                    var handler = (EventHandler)GCHandle.FromIntPtr(userdata).Target;
                    VoiceEvent e = VoiceEvent.From(ref *(voice_event*)ev);
                    handler(e);
                }
                catch (Exception)
                {
                    // Never unwind into the library's thread.
                }
            }
        }
    }

    /// <summary>A sans-IO Opus encoder producing voice datagrams for your own transport (one thread at a time).</summary>
    public sealed class VoiceEncoder : IDisposable
    {
        readonly EncoderHandle h = new EncoderHandle();

        /// <summary>The library's default settings (32 kb/s, FEC on, 5 % loss hint, session 1).</summary>
        public static voice_encoder_config DefaultConfig()
        {
            var c = new voice_encoder_config();
            VoiceException.Check(Native.voice_encoder_config_default(ref c), "voice_encoder_config_default");
            return c;
        }

        /// <summary>Creates an encoder.</summary>
        public VoiceEncoder(voice_encoder_config config)
        {
            VoiceLibrary.CheckAbi();
            IntPtr p;
            VoiceException.Check(Native.voice_encoder_new(ref config, out p), "voice_encoder_new");
            h.Adopt(p);
        }

        /// <summary>The owned handle.</summary>
        public EncoderHandle Handle { get { return h; } }

        /// <summary>Frees the encoder. Idempotent.</summary>
        public void Dispose() { h.Dispose(); }

        /// <summary>
        /// Encodes one frame (VOICE_FRAME_SAMPLES samples) into `datagram` (VOICE_MAX_DATAGRAM bytes
        /// always suffice); returns the datagram's length. `target` 0 = channel, else a whisper recipient.
        /// </summary>
        public int Encode(short[] frame, uint target, bool endOfSpurt, byte[] datagram)
        {
            if (frame == null || datagram == null) throw new ArgumentNullException(frame == null ? "frame" : "datagram");
            UIntPtr written;
            IntPtr p = h.Enter("voice_encoder_encode");
            try
            {
                VoiceException.Check(Native.voice_encoder_encode(p, frame, (UIntPtr)frame.Length, target, endOfSpurt,
                    datagram, (UIntPtr)datagram.Length, out written), "voice_encoder_encode");
            }
            finally { h.Leave(); }
            return (int)written;
        }

        /// <summary>Lets one frame period pass without sending.</summary>
        public void SkipFrame()
        {
            IntPtr p = h.Enter("voice_encoder_skip_frame");
            try { VoiceException.Check(Native.voice_encoder_skip_frame(p), "voice_encoder_skip_frame"); } finally { h.Leave(); }
        }
    }

    /// <summary>A sans-IO jitter buffer + decoder for one remote sender (one thread at a time).</summary>
    public sealed class VoiceReceiver : IDisposable
    {
        readonly ReceiverHandle h = new ReceiverHandle();

        /// <summary>The library's default settings (adaptive playout 0..400 ms, first sender, FEC on).</summary>
        public static voice_receiver_config DefaultConfig()
        {
            var c = new voice_receiver_config();
            VoiceException.Check(Native.voice_receiver_config_default(ref c), "voice_receiver_config_default");
            return c;
        }

        /// <summary>Creates a receiver (a value out of range throws with VOICE_ERR_INVALID_ARGUMENT).</summary>
        public VoiceReceiver(voice_receiver_config config)
        {
            VoiceLibrary.CheckAbi();
            IntPtr p;
            VoiceException.Check(Native.voice_receiver_new(ref config, out p), "voice_receiver_new");
            h.Adopt(p);
        }

        /// <summary>The owned handle.</summary>
        public ReceiverHandle Handle { get { return h; } }

        /// <summary>Frees the receiver. Idempotent.</summary>
        public void Dispose() { h.Dispose(); }

        /// <summary>
        /// Offers the first `length` bytes of a datagram that arrived at `nowUs`. Returns VOICE_OK, or
        /// VOICE_ERR_MALFORMED / VOICE_ERR_WRONG_SENDER for a datagram that was dropped and counted
        /// (normal on a network: not thrown); any other failure throws.
        /// </summary>
        public voice_result Push(ulong nowUs, byte[] datagram, int length)
        {
            if (datagram == null || (uint)length > (uint)datagram.Length) throw new ArgumentOutOfRangeException("length");
            voice_result r;
            IntPtr p = h.Enter("voice_receiver_push");
            try { r = Native.voice_receiver_push(p, nowUs, datagram, (UIntPtr)length); } finally { h.Leave(); }
            if (r != voice_result.VOICE_OK && r != voice_result.VOICE_ERR_MALFORMED && r != voice_result.VOICE_ERR_WRONG_SENDER)
                throw new VoiceException(r, "voice_receiver_push");
            return r;
        }

        /// <summary>Writes the frame for the tick at `nowUs` into `frame` (≥ VOICE_FRAME_SAMPLES); returns its VOICE_SOURCE_*.</summary>
        public uint Pop(ulong nowUs, short[] frame)
        {
            if (frame == null) throw new ArgumentNullException("frame");
            uint source;
            IntPtr p = h.Enter("voice_receiver_pop");
            try { VoiceException.Check(Native.voice_receiver_pop(p, nowUs, frame, (UIntPtr)frame.Length, out source), "voice_receiver_pop"); } finally { h.Leave(); }
            return source;
        }

        /// <summary>The receiver's metrics as of `nowUs`.</summary>
        public voice_stream_stats Stats(ulong nowUs)
        {
            var s = new voice_stream_stats();
            IntPtr p = h.Enter("voice_receiver_stats");
            try { VoiceException.Check(Native.voice_receiver_stats(p, nowUs, ref s), "voice_receiver_stats"); } finally { h.Leave(); }
            return s;
        }
    }
}
