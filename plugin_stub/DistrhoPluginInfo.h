// The plugin's one manifest: what DPF builds (VST3, CLAP, LV2, JACK) and what the plugin exposes.
#ifndef DISTRHO_PLUGIN_INFO_H_INCLUDED
#define DISTRHO_PLUGIN_INFO_H_INCLUDED

#define DISTRHO_PLUGIN_BRAND "Deep Musician"
#define DISTRHO_PLUGIN_NAME  "Deep Musician"
#define DISTRHO_PLUGIN_URI   "https://github.com/deep-musician/deep-musician#plugin"
#define DISTRHO_PLUGIN_CLAP_ID "org.deep-musician.plugin"

#define DISTRHO_PLUGIN_BRAND_ID  DpMu
#define DISTRHO_PLUGIN_UNIQUE_ID DpMs

#define DISTRHO_PLUGIN_HAS_UI          0
#define DISTRHO_PLUGIN_IS_RT_SAFE      1
#define DISTRHO_PLUGIN_IS_SYNTH        1  // notes in; arranged notes (MIDI) or rendered audio out
#define DISTRHO_PLUGIN_NUM_INPUTS      0
#define DISTRHO_PLUGIN_NUM_OUTPUTS     2
#define DISTRHO_PLUGIN_WANT_MIDI_INPUT  1
#define DISTRHO_PLUGIN_WANT_MIDI_OUTPUT 1
#define DISTRHO_PLUGIN_WANT_TIMEPOS    1
#define DISTRHO_PLUGIN_WANT_LATENCY    1  // Arrange and Render answer a fixed latency late
#define DISTRHO_PLUGIN_WANT_STATE      1  // engine endpoint and session, so a saved project reconnects
#define DISTRHO_PLUGIN_WANT_FULL_STATE 1  // getState(): the session id the plugin made up is saved too

#define DISTRHO_PLUGIN_LV2_CATEGORY    "lv2:InstrumentPlugin"
#define DISTRHO_PLUGIN_VST3_CATEGORIES "Instrument|Generator"
#define DISTRHO_PLUGIN_CLAP_FEATURES   "instrument", "note-effect", "stereo"

#endif  // DISTRHO_PLUGIN_INFO_H_INCLUDED
