// Tests of the C# binding against the real library, run by bindings/csharp/test.sh under Mono:
//   layout    Marshal.SizeOf / OffsetOf of every struct and every constant equal the C compiler's
//   sansio    encoder -> receiver on simulated time: a tone comes back; bad datagrams are counted
//   misuse    freed handles (also Dispose racing a call), wrong handle kinds and bad arguments
//             give exceptions with the code
//   relay     two clients (app audio) on a relay on 127.0.0.1: a tone from one is heard by the
//             other, chat with non-ASCII text and names both ways, events by callback and polling
// Usage: mono tests.exe LAYOUT_FROM_C RELAY_BINARY WORK_DIR [test names...]
using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text;
using System.Threading;

namespace Voice.Tests
{
    static class Program
    {
        static string layoutFromC, relayBin, workDir;

        static int Main(string[] args)
        {
            if (args.Length < 3)
            {
                Console.Error.WriteLine("usage: tests.exe LAYOUT_FROM_C RELAY_BINARY WORK_DIR [tests...]");
                return 2;
            }
            layoutFromC = args[0];
            relayBin = args[1];
            workDir = args[2];
            var tests = new List<KeyValuePair<string, Action>>
            {
                new KeyValuePair<string, Action>("layout", LayoutMatchesC),
                new KeyValuePair<string, Action>("sansio", SansIoLoopback),
                new KeyValuePair<string, Action>("misuse", Misuse),
                new KeyValuePair<string, Action>("relay", TwoClientsOnRelay),
            };
            var only = new HashSet<string>(args.Skip(3));
            int failed = 0;
            Console.WriteLine("libvoice " + VoiceLibrary.Version + ", ABI " + VoiceLibrary.AbiVersion);
            foreach (var t in tests)
            {
                if (only.Count > 0 && !only.Contains(t.Key)) continue;
                var sw = Stopwatch.StartNew();
                try
                {
                    t.Value();
                    Console.WriteLine("ok   " + t.Key + " (" + sw.ElapsedMilliseconds + " ms)");
                }
                catch (Exception e)
                {
                    failed++;
                    Console.WriteLine("FAIL " + t.Key + " (" + sw.ElapsedMilliseconds + " ms): " + e);
                }
            }
            Console.WriteLine(failed == 0 ? "csharp: ok" : "csharp: " + failed + " failed");
            return failed == 0 ? 0 : 1;
        }

        static void Check(bool cond, string what)
        {
            if (!cond) throw new Exception("check failed: " + what);
        }

        static VoiceException Throws(voice_result code, Action a, string what)
        {
            try
            {
                a();
            }
            catch (VoiceException e)
            {
                Check(e.Code == code, what + ": expected " + code + ", got " + e.Code + " (" + e.Message + ")");
                Check(e.Message.Contains(VoiceLibrary.ErrorMessage(code)), what + ": message carries the library's text: " + e.Message);
                return e;
            }
            throw new Exception("check failed: " + what + ": no exception, expected " + code);
        }

        // ---- layout -------------------------------------------------------------------------

        static void LayoutMatchesC()
        {
            var c = File.ReadAllLines(layoutFromC).Where(l => l.Length > 0).ToList();
            var cs = Layout.Lines();
            var diff = new List<string>();
            foreach (var l in c.Except(cs)) diff.Add("C  only: " + l);
            foreach (var l in cs.Except(c)) diff.Add("C# only: " + l);
            if (diff.Count > 0) throw new Exception("layout differs from the C compiler's:\n  " + string.Join("\n  ", diff));
            Check(c.Count == cs.Count && c.Count > 50, "the same number of layout lines (" + c.Count + ", " + cs.Count + ")");
        }

        // ---- sans-IO loopback ---------------------------------------------------------------

        /// <summary>Power of `freq` in `pcm` (Goertzel), normalised by length.</summary>
        static double Tone(short[] pcm, int n, double freq)
        {
            double w = 2 * Math.PI * freq / 48000, coeff = 2 * Math.Cos(w), s1 = 0, s2 = 0;
            for (int i = 0; i < n; i++)
            {
                double s = pcm[i] + coeff * s1 - s2;
                s2 = s1;
                s1 = s;
            }
            return (s1 * s1 + s2 * s2 - coeff * s1 * s2) / n;
        }

        static double Rms(short[] pcm, int n)
        {
            double e = 0;
            for (int i = 0; i < n; i++) e += (double)pcm[i] * pcm[i];
            return Math.Sqrt(e / Math.Max(1, n));
        }

        /// <summary>True when `pcm` holds a clear `freq` tone (loud, and far above a control frequency).</summary>
        static bool HasTone(short[] pcm, int n, double freq)
        {
            return Rms(pcm, n) > 300 && Tone(pcm, n, freq) > 20 * Tone(pcm, n, freq * 2.3);
        }

        static void FillTone(short[] pcm, long firstSample, double freq, double amp)
        {
            for (int i = 0; i < pcm.Length; i++)
                pcm[i] = (short)(amp * Math.Sin(2 * Math.PI * freq * (firstSample + i) / 48000));
        }

        static void SansIoLoopback()
        {
            const int frames = 150;
            var ec = VoiceEncoder.DefaultConfig();
            Check(ec.fec && ec.packet_loss_percent == Native.VOICE_DEFAULT_LOSS_PERCENT, "encoder defaults read through the bool property");
            ec.session = 42;
            var rc = VoiceReceiver.DefaultConfig();
            rc.policy = Native.VOICE_PLAYOUT_FIXED;
            rc.watermark_packets = 2;
            rc.sender = 42;
            using (var enc = new VoiceEncoder(ec))
            using (var rx = new VoiceReceiver(rc))
            {
                var pcm = new short[Native.VOICE_FRAME_SAMPLES];
                var dgram = new byte[Native.VOICE_MAX_DATAGRAM];
                var outPcm = new short[Native.VOICE_FRAME_SAMPLES];
                int fromPacket = 0, toneFrames = 0;
                for (int f = 0; f < frames + 5; f++)
                {
                    ulong now = (ulong)f * 20000;
                    if (f < frames)
                    {
                        FillTone(pcm, (long)f * pcm.Length, 440, 8000);
                        int n = enc.Encode(pcm, 0, f == frames - 1, dgram);
                        Check(n > 12 && n <= dgram.Length, "datagram length " + n);
                        Check(rx.Push(now + 5000, dgram, n) == voice_result.VOICE_OK, "push frame " + f);
                    }
                    uint src = rx.Pop(now + 10000, outPcm);
                    if (src == Native.VOICE_SOURCE_PACKET)
                    {
                        fromPacket++;
                        if (HasTone(outPcm, outPcm.Length, 440)) toneFrames++;
                    }
                }
                Check(fromPacket >= frames - 5, "frames decoded from packets: " + fromPacket);
                // The first frames are the codec's ramp-up.
                Check(toneFrames >= frames - 10, "frames with the 440 Hz tone: " + toneFrames);
                var st = rx.Stats((ulong)(frames + 5) * 20000);
                Check(st.packets_received == frames && st.packets_lost == 0, "received " + st.packets_received + ", lost " + st.packets_lost);
                Check(st.frames_played >= (ulong)(frames - 5), "frames_played " + st.frames_played);

                // Dropped and counted, not thrown: a malformed datagram and one of another sender.
                Check(rx.Push(4000000, new byte[] { 1, 2, 3 }, 3) == voice_result.VOICE_ERR_MALFORMED, "malformed datagram");
                var other = VoiceEncoder.DefaultConfig();
                other.session = 7;
                using (var enc2 = new VoiceEncoder(other))
                {
                    int n = enc2.Encode(pcm, 0, false, dgram);
                    Check(rx.Push(4000000, dgram, n) == voice_result.VOICE_ERR_WRONG_SENDER, "another sender's datagram");
                }
                st = rx.Stats(4000000);
                Check(st.datagrams_malformed == 1 && st.datagrams_wrong_sender == 1,
                    "counted: malformed " + st.datagrams_malformed + ", wrong sender " + st.datagrams_wrong_sender);

                // A too-small output buffer is an exception with the code; the encoder stays usable.
                Throws(voice_result.VOICE_ERR_BUFFER_TOO_SMALL, () => enc.Encode(pcm, 0, false, new byte[4]), "tiny datagram buffer");
                Throws(voice_result.VOICE_ERR_INVALID_ARGUMENT, () => enc.Encode(new short[100], 0, false, dgram), "wrong frame size");
                Check(enc.Encode(pcm, 0, false, dgram) > 0, "encoder usable after errors");
            }
        }

        // ---- misuse -------------------------------------------------------------------------

        static void Misuse()
        {
            // Through the idiomatic layer: a disposed handle throws VOICE_ERR_INVALID_HANDLE.
            var enc = new VoiceEncoder(VoiceEncoder.DefaultConfig());
            enc.Dispose();
            enc.Dispose();
            var pcm = new short[Native.VOICE_FRAME_SAMPLES];
            Throws(voice_result.VOICE_ERR_INVALID_HANDLE, () => enc.Encode(pcm, 0, false, new byte[Native.VOICE_MAX_DATAGRAM]), "encode after Dispose");
            var rx = new VoiceReceiver(VoiceReceiver.DefaultConfig());
            rx.Dispose();
            Throws(voice_result.VOICE_ERR_INVALID_HANDLE, () => rx.Pop(0, pcm), "pop after Dispose");

            // Dispose racing calls on another thread: the SafeHandle defers the free until the call in
            // flight returns; later calls throw VOICE_ERR_INVALID_HANDLE; nothing crashes.
            var rx2 = new VoiceReceiver(VoiceReceiver.DefaultConfig());
            Exception unexpected = null;
            int popped = 0, refused = 0;
            var popper = new Thread(() =>
            {
                var buf = new short[Native.VOICE_FRAME_SAMPLES];
                var sw = Stopwatch.StartNew();
                for (ulong t = 0; sw.ElapsedMilliseconds < 3000; t += 20000)
                {
                    try
                    {
                        rx2.Pop(t, buf);
                        popped++;
                    }
                    catch (VoiceException e)
                    {
                        if (e.Code != voice_result.VOICE_ERR_INVALID_HANDLE) unexpected = e;
                        refused++;
                        return;
                    }
                    catch (Exception e)
                    {
                        unexpected = e;
                        return;
                    }
                }
            }) { Name = "popper" };
            popper.Start();
            var wait = Stopwatch.StartNew();
            while (popped < 100 && wait.ElapsedMilliseconds < 2000) Thread.Sleep(1);
            rx2.Dispose();
            Check(popper.Join(5000), "the popping thread ended");
            Check(unexpected == null, "only VOICE_ERR_INVALID_HANDLE after Dispose: " + unexpected);
            Check(popped >= 100 && refused == 1, "popped " + popped + " frames, then refused");

            // Through the raw layer the library itself detects a freed handle and a wrong kind.
            var ec = VoiceEncoder.DefaultConfig();
            IntPtr raw;
            Check(Native.voice_encoder_new(ref ec, out raw) == voice_result.VOICE_OK, "raw encoder");
            Check(Native.voice_encoder_free(raw) == voice_result.VOICE_OK, "raw free");
            Check(Native.voice_encoder_free(raw) == voice_result.VOICE_ERR_INVALID_HANDLE, "double free is an error, not a crash");
            UIntPtr written;
            Check(Native.voice_encoder_encode(raw, pcm, (UIntPtr)pcm.Length, 0, false, new byte[1200], (UIntPtr)1200, out written)
                  == voice_result.VOICE_ERR_INVALID_HANDLE, "use after free is an error");
            var rc = VoiceReceiver.DefaultConfig();
            IntPtr rxRaw;
            Check(Native.voice_receiver_new(ref rc, out rxRaw) == voice_result.VOICE_OK, "raw receiver");
            Check(Native.voice_client_leave(rxRaw) == voice_result.VOICE_ERR_INVALID_HANDLE, "a receiver passed as a client");
            Check(Native.voice_receiver_free(rxRaw) == voice_result.VOICE_OK, "raw receiver free");
            Check(Native.voice_client_join(IntPtr.Zero, 1) == voice_result.VOICE_ERR_NULL, "NULL client");

            // Configuration errors.
            rc = VoiceReceiver.DefaultConfig();
            rc.policy = Native.VOICE_PLAYOUT_FIXED;
            rc.watermark_packets = Native.VOICE_MAX_WATERMARK + 1;
            Throws(voice_result.VOICE_ERR_INVALID_ARGUMENT, () => new VoiceReceiver(rc), "watermark out of range");
            ec.bitrate = 1;
            Throws(voice_result.VOICE_ERR_INVALID_ARGUMENT, () => new VoiceEncoder(ec), "bitrate out of range");
            Throws(voice_result.VOICE_ERR_NULL, () => new VoiceClient(new ClientConfig { Name = "x" }), "no server");
            Throws(voice_result.VOICE_ERR_INVALID_ARGUMENT, () => new VoiceClient(new ClientConfig { Server = "not an address", Name = "x" }), "bad address");

            // Every code has a text; an unknown code gets a generic one.
            foreach (voice_result code in Enum.GetValues(typeof(voice_result)))
                Check(VoiceLibrary.ErrorMessage(code).Length > 0, "text for " + code);
            Check(VoiceLibrary.ErrorMessage((voice_result)999).Length > 0, "text for an unknown code");

            // A client whose relay refuses the connection: a DISCONNECTED event (polled) and no retry;
            // chat of bad length is refused before anything is read; a disposed client throws.
            int port = FreeTcpPort();
            var cfg = new ClientConfig { Server = "127.0.0.1:" + port, Name = "lonely", Audio = Native.VOICE_AUDIO_NULL, Reconnect = false, TrustOnFirstUse = true };
            var client = new VoiceClient(cfg);
            try
            {
                VoiceEvent ev = WaitPolled(client, Native.VOICE_EVENT_DISCONNECTED, 5000);
                Check(ev.Text.Length > 0, "the disconnect says why: " + ev.Text);
                Throws(voice_result.VOICE_ERR_INVALID_ARGUMENT, () => client.SendChat(new string('x', 2001)), "chat too long");
                Throws(voice_result.VOICE_ERR_INVALID_ARGUMENT, () => client.SendChat(""), "empty chat");
                Throws(voice_result.VOICE_ERR_NOT_CONNECTED, () => client.SendChat("hello"), "chat while not connected");
                Throws(voice_result.VOICE_ERR_UNSUPPORTED, () => client.PullPlayback(pcm, pcm.Length), "pull without app audio");
            }
            finally
            {
                client.Dispose();
            }
            Throws(voice_result.VOICE_ERR_INVALID_HANDLE, () => client.Join(1), "join after Dispose");
        }

        static int FreeTcpPort()
        {
            var l = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
            l.Start();
            int port = ((System.Net.IPEndPoint)l.LocalEndpoint).Port;
            l.Stop();
            return port;
        }

        /// <summary>Polls until an event of `kind` (others are skipped), at most `ms` milliseconds.</summary>
        static VoiceEvent WaitPolled(VoiceClient c, uint kind, int ms, Func<VoiceEvent, bool> also = null, List<VoiceEvent> seen = null)
        {
            VoiceEvent earlier = Take(seen, kind, also);
            if (earlier != null) return earlier;
            var sw = Stopwatch.StartNew();
            while (sw.ElapsedMilliseconds < ms)
            {
                VoiceEvent e;
                while (c.PollEvent(out e))
                {
                    if (e.Kind == kind && (also == null || also(e))) return e;
                    if (seen != null) seen.Add(e);
                }
                Thread.Sleep(10);
            }
            throw new Exception("no " + kind + " event (polled) within " + ms + " ms" +
                (seen != null ? "; saw: " + string.Join(" | ", seen.Select(x => x.ToString())) : ""));
        }

        /// <summary>Waits until the callback queue delivers an event of `kind`, at most `ms` milliseconds.</summary>
        static VoiceEvent WaitQueued(BlockingCollection<VoiceEvent> q, List<VoiceEvent> seen, uint kind, int ms, Func<VoiceEvent, bool> also = null)
        {
            VoiceEvent earlier = Take(seen, kind, also);
            if (earlier != null) return earlier;
            var sw = Stopwatch.StartNew();
            while (sw.ElapsedMilliseconds < ms)
            {
                VoiceEvent e;
                if (q.TryTake(out e, 50))
                {
                    if (e.Kind == kind && (also == null || also(e))) return e;
                    seen.Add(e);
                }
            }
            throw new Exception("no " + kind + " event (callback) within " + ms + " ms; saw: " + string.Join(" | ", seen.Select(x => x.ToString())));
        }

        /// <summary>Removes and returns the first event in `seen` of `kind` matching `also`, or null.</summary>
        static VoiceEvent Take(List<VoiceEvent> seen, uint kind, Func<VoiceEvent, bool> also)
        {
            if (seen == null) return null;
            int i = seen.FindIndex(e => e.Kind == kind && (also == null || also(e)));
            if (i < 0) return null;
            VoiceEvent found = seen[i];
            seen.RemoveAt(i);
            return found;
        }

        // ---- two clients on a relay ---------------------------------------------------------

        /// <summary>A relay process on 127.0.0.1 and how clients reach it.</summary>
        sealed class Relay : IDisposable
        {
            public Process Process;
            public Func<string, ClientConfig> NewConfig;

            public void Dispose()
            {
                try { if (!Process.HasExited) Process.Kill(); } catch (InvalidOperationException) { }
                if (Process.WaitForExit(5000)) File.Delete(Path.Combine(workDir, "relay.pid"));
                Process.Dispose();
            }
        }

        /// <summary>
        /// Starts the relay and says how a client connects to it: the one place that knows the relay's
        /// command line and the client settings that go with it (TLS with the pinned fingerprint).
        /// </summary>
        /// <summary>A token for `name` signed with the relay's own key (`relay token`).</summary>
        static string MintToken(string name)
        {
            var psi = new ProcessStartInfo(relayBin, "token --identity-dir \"" + Path.Combine(workDir, "relay-identity") + "\" --name \"" + name + "\"")
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
            };
            using (var p = Process.Start(psi))
            {
                string token = p.StandardOutput.ReadToEnd().Trim();
                p.WaitForExit();
                if (p.ExitCode != 0 || token.Length == 0)
                    throw new Exception("relay token failed with exit code " + p.ExitCode);
                return token;
            }
        }

        static Relay StartRelay()
        {
            var psi = new ProcessStartInfo(relayBin, "--listen 127.0.0.1:0 --identity-dir \"" + Path.Combine(workDir, "relay-identity") + "\"")
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
            };
            psi.EnvironmentVariables["RUST_LOG"] = "warn";
            var p = Process.Start(psi);
            // test.sh kills it from this file should the test process die first.
            File.WriteAllText(Path.Combine(workDir, "relay.pid"), p.Id.ToString());
            var lines = new BlockingCollection<string>();
            var reader = new Thread(() =>
            {
                string l;
                while ((l = p.StandardOutput.ReadLine()) != null) lines.Add(l);
            }) { IsBackground = true, Name = "relay-stdout" };
            reader.Start();
            string addr = null, fingerprint = null;
            var sw = Stopwatch.StartNew();
            while ((addr == null || fingerprint == null) && sw.ElapsedMilliseconds < 10000)
            {
                string l;
                if (!lines.TryTake(out l, 100)) continue;
                if (l.StartsWith("listening on ")) addr = l.Substring("listening on ".Length).Trim();
                if (l.StartsWith("fingerprint ")) fingerprint = l.Substring("fingerprint ".Length).Trim();
            }
            var relay = new Relay { Process = p };
            if (addr == null || fingerprint == null)
            {
                relay.Dispose();
                throw new Exception("the relay printed no address/fingerprint within 10 s");
            }
            relay.NewConfig = name => new ClientConfig
            {
                Server = addr,
                Name = name,
                TlsFingerprint = fingerprint,
                AccessToken = MintToken(name),
                Audio = Native.VOICE_AUDIO_APP,
                TransmitMode = Native.VOICE_TRANSMIT_CONTINUOUS,
                Reconnect = false,
            };
            return relay;
        }

        static void TwoClientsOnRelay()
        {
            const string aliceName = "Ålice ✓";
            const string bobName = "bob";
            using (var relay = StartRelay())
            {
                // Alice gets her events through the callback (on the library's thread, into a queue).
                var aliceEvents = new BlockingCollection<VoiceEvent>();
                var aliceSeen = new List<VoiceEvent>();
                var callbackThreads = new ConcurrentDictionary<int, bool>();
                int mainThread = Thread.CurrentThread.ManagedThreadId;
                using (var alice = new VoiceClient(relay.NewConfig(aliceName)))
                {
                    alice.SetEventCallback(e =>
                    {
                        callbackThreads[Thread.CurrentThread.ManagedThreadId] = true;
                        aliceEvents.Add(e);
                    });
                    WaitQueued(aliceEvents, aliceSeen, Native.VOICE_EVENT_CHANNEL_JOINED, 10000);
                    VoiceEvent polled;
                    Check(!alice.PollEvent(out polled), "no polled events while a callback is set");

                    // Bob polls. He joins after Alice, so he is told about her as a member.
                    var bobConfig = relay.NewConfig(bobName);
                    bobConfig.CaptureMode = Native.VOICE_CAPTURE_ON;
                    Check(bobConfig.BackgroundVoiceMarginDb == 6.0f, "background voices 6 dB under the talker by default");
                    bobConfig.BackgroundVoiceMarginDb = 8.0f;
                    using (var bob = new VoiceClient(bobConfig))
                    {
                        var bobSeen = new List<VoiceEvent>();
                        WaitPolled(bob, Native.VOICE_EVENT_UDP_READY, 10000, null, bobSeen);
                        VoiceEvent member = WaitPolled(bob, Native.VOICE_EVENT_MEMBER, 5000, e => e.Name == aliceName, bobSeen);
                        uint aliceSession = member.Session;
                        VoiceEvent joined = WaitQueued(aliceEvents, aliceSeen, Native.VOICE_EVENT_USER_JOINED, 5000, e => e.Name == bobName);
                        uint bobSession = joined.Session;
                        Check(aliceSession != 0 && bobSession != 0 && aliceSession != bobSession, "two sessions");
                        WaitQueued(aliceEvents, aliceSeen, Native.VOICE_EVENT_UDP_READY, 5000);

                        // Alice talks a 440 Hz tone in real time; Bob's playback must carry it.
                        var say = new short[Native.VOICE_FRAME_SAMPLES];
                        var heard = new short[Native.VOICE_FRAME_SAMPLES];
                        int toneFrames = 0, fromEngine = 0;
                        long sample = 0;
                        var sw = Stopwatch.StartNew();
                        for (int tick = 0; tick < 400 && toneFrames < 15; tick++)
                        {
                            FillTone(say, sample, 440, 8000);
                            sample += say.Length;
                            alice.PushCapture(say, say.Length);
                            int n = bob.PullPlayback(heard, heard.Length);
                            fromEngine += n;
                            if (n == heard.Length && HasTone(heard, n, 440)) toneFrames++;
                            // Keep to real time (20 ms a frame) without drifting.
                            long ahead = (tick + 1) * 20 - sw.ElapsedMilliseconds;
                            if (ahead > 0) Thread.Sleep((int)ahead);
                        }
                        Check(toneFrames >= 15, "Bob heard Alice's tone in " + toneFrames + " frames (" + fromEngine + " samples from the engine)");
                        Console.WriteLine("     relay: Bob heard the 440 Hz tone in " + toneFrames + " frames after " + sw.ElapsedMilliseconds + " ms");

                        // The control: Alice muted, Bob's playback goes quiet (so the detector is not fooled).
                        alice.SetMuted(true);
                        int lateTone = 0;
                        sw.Restart();
                        for (int tick = 0; tick < 75; tick++)
                        {
                            FillTone(say, sample, 440, 8000);
                            sample += say.Length;
                            alice.PushCapture(say, say.Length);
                            bob.PullPlayback(heard, heard.Length);
                            if (tick >= 50 && HasTone(heard, heard.Length, 440)) lateTone++;
                            long ahead = (tick + 1) * 20 - sw.ElapsedMilliseconds;
                            if (ahead > 0) Thread.Sleep((int)ahead);
                        }
                        Check(lateTone == 0, "Bob still heard the tone " + lateTone + " times 1 s after Alice muted");
                        alice.SetMuted(false);
                        var bs = bob.Stats();
                        Check((ulong)bs.remote_count >= 1, "Bob's stats list a remote sender");
                        Check(bs.remotes(0).session == aliceSession && bs.remotes(0).stream.packets_received > 10,
                            "Bob's stats for Alice: session " + bs.remotes(0).session + ", packets " + bs.remotes(0).stream.packets_received);
                        var @as = alice.Stats();
                        Check(@as.tx_packets > 10 && @as.udp_ready && @as.session == aliceSession, "Alice's stats: tx " + @as.tx_packets);
                        Check(alice.CaptureStats() == null, "application audio leaves capture processing off");
                        Check(bob.CaptureStats() != null, "Bob turned capture processing on");

                        // Chat with non-ASCII text, each way; Alice's by callback, then by polling.
                        const string toAlice = "grüße ✓ from bob";
                        bob.SendChat(toAlice);
                        VoiceEvent chat = WaitQueued(aliceEvents, aliceSeen, Native.VOICE_EVENT_CHAT, 5000, e => e.Session == bobSession);
                        Check(chat.Text == toAlice && chat.Name == bobName && chat.Session == bobSession,
                            "Alice got Bob's chat by callback: '" + chat.Text + "' from '" + chat.Name + "'");
                        const string toBob = "héllo → bob";
                        alice.SendChat(toBob);
                        chat = WaitPolled(bob, Native.VOICE_EVENT_CHAT, 5000, e => e.Session == aliceSession, bobSeen);
                        Check(chat.Text == toBob && chat.Name == aliceName, "Bob got Alice's chat by polling: '" + chat.Text + "' from '" + chat.Name + "'");

                        alice.SetEventCallback(null);
                        bob.SendChat("polled now");
                        chat = WaitPolled(alice, Native.VOICE_EVENT_CHAT, 5000, e => e.Session == bobSession && e.Text != toAlice);
                        Check(chat.Text == "polled now", "Alice polls after clearing the callback");
                        Check(!callbackThreads.ContainsKey(mainThread) && callbackThreads.Count >= 1,
                            "callbacks ran on the library's thread, not the caller's");
                    }
                }
            }
        }
    }
}
